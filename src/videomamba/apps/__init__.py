"""Applications built on the library (``videomamba.apps.search``: index and search folders of video).

Applications may import any layer of the library; no layer (models, layers, ops, data, engine)
imports an application.
"""
