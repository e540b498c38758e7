"""One Lambda function per subpackage; Lambda imports `functions.<name>.app` and calls its `handler`.

Importing any of them first pauses the cycle collector (shared.platform.collector), before a library is loaded: a
cold start allocates a great deal and keeps all of it, so walking it while the handler is imported would find nothing
to free. Each function ends the pause once its app is built (create_app, or the sweep's module), freezing what the
cold start built.
"""

from shared.platform.collector import pause_for_cold_start

pause_for_cold_start()
