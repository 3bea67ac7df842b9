"""The baselines the portal's pages are measured against, each a tiny Flask app served by
gunicorn with the portal's settings: hello world (``hello``) and TechEmpower's "Fortunes"
(``fortunes``)."""
