"""The tools that measure the runtime from outside it, imported only by their ``edge-app`` subcommands.

``bench/`` (``edge-app bench``: the pipeline stage by stage against the naive loop, bare ``invoke()`` and the cost
of MJPEG viewers), ``soak.py`` (``edge-app soak``: the app's memory over minutes of streaming), ``video.py`` (the
synthetic test video both use) and ``mjpeg.py`` (the MJPEG client of both, and of the tests).
"""
