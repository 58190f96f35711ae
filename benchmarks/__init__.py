"""
Benchmarks of pxed (run each as C{python -m benchmarks.NAME}).
"""
