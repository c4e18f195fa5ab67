"""Fleet mode: thousands of simulated vehicles in one process (`python -m simulator fleet`)."""
