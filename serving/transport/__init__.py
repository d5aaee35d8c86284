"""How requests reach the service: the uvicorn server and its workers, the listening socket, and
the HTTP protocol class that enforces connection limits, stamps arrival and writes the cheapest
refusals, before any application code runs."""
