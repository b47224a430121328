"""Training engine for the toy models of "Engineering Monosemanticity in Toy Models".

Nothing here imports Dash, and nothing runs torch work at import time (workers are spawned).
"""
