"""One Lambda function per subpackage; Lambda imports `functions.<name>.app` and calls its `handler`.

Importing any of them first tunes the cycle collector (shared.platform.collector), before a library is loaded:
a cold start allocates a great deal and keeps all of it, and the default thresholds would have the collector walk
it over and over while the handler is imported.
"""

from shared.platform.collector import tune_gc

tune_gc()
