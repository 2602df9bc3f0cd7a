"""The IPython extension: ``%%flow`` cells, the notebook's graph, widgets, parameters.

``%load_ext jupyter_flow`` registers the magics (see :mod:`jupyter_flow.kernel.magics`).
"""
