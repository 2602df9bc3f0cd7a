"""Jupyter server extension: the REST API over the store, and the reconciler.

Enabled on install (``jupyter-config/server-config/jupyter_flow.json``); see ``app.FlowApp``.
"""
