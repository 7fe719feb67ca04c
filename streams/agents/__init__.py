"""The worker's Faust agents and timers, one module each; `streams/worker.py` registers them."""
