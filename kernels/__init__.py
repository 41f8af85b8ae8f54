"""irshim's in-tree providers (entry point `irshim.providers: kernels`).

Importing this package registers every provider family it holds.
"""
