"""Pure-Python core of jupyter_flow: ops, lazy nodes, graphs, cache keys, statuses.

Nothing here imports Jupyter, the store or Dask's distributed scheduler, so every other
package can build on it.
"""
