"""Services outside the portal, simulated for the demo and the tests.

Each runs as a process of its own and knows nothing of the portal: no module here imports
another portal module, and only ``portal.cli`` (which starts them for ``make run``) may import
one (import-linter contract ``sandbox-outside``).
"""
