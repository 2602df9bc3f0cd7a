"""What runs on Dask workers (and in the child processes of isolated ops).

``task.py`` runs one task: the op, its retries and timeout, its logs, the artifact write
and the events that report it; ``capture.py`` records what the op prints and displays as
Jupyter outputs, ``mpl_backend.py`` is the matplotlib backend that turns ``plt.show()``
into images, ``isolated.py`` the entry point of an ``isolate=True`` op's child process.

Workers never open the database. This package imports only ``core`` and ``artifacts``
(tests/test_architecture.py checks it), so what a worker loads stays small.
"""
