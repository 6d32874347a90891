"""Analyses from the KAIST paper: the frame-reordering test and Delta (step size) maps.

Import the submodules directly (``videomamba.analysis.reorder``, ``videomamba.analysis.delta``);
plotting and video writing load matplotlib / Pillow / PyAV only when used.
"""
