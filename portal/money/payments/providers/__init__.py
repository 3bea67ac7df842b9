"""Payment provider adapters behind one port (``base.Provider``); ``provider_named`` builds one
from the app's configuration, ``provider_for`` picks the one configured for a kind of method."""
