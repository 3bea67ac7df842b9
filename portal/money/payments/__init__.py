"""Money from outside (spec service 7, Payment Gateway): top-ups, paid courses, saved payment
methods and refunds, through payment providers behind one interface (``providers``)."""
