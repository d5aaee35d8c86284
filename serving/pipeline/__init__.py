"""The request path every prediction takes: admit -> read -> decode -> submit -> encode -> observe.

stages.py     Pipeline: the stages in order, one Ticket per admitted request
doors.py      which requests are predictions, and their codec (v1, OIP v2)
head.py       the one header pass (RequestHead)
admission.py  refuse from the headers what cannot be served in time (503)
codec.py      the HTTP codecs behind one interface; v1.py and oip.py are their wire formats
contract.py   what a request is checked against (the served model's tensors, the limits)
pixels.py     uint8 scaling and range checks, shared by every codec
body.py       reading a body, 413 past the limit
errors.py     the errors a request can end with, and their status
hooks.py      what observability is told (RequestObserver, NullRequestObserver)
"""

from serving.pipeline.stages import ARRIVAL, RESPONDER, Pipeline, Refusal, Ticket, arrival_of

__all__ = ["ARRIVAL", "RESPONDER", "Pipeline", "Refusal", "Ticket", "arrival_of"]
