"""The BentoML service that serves the CPFD students (see serving/service.py)."""
