"""Safe model rollout (issue 27): a new version is a candidate beside the stable one, shadowed
or canaried, judged by live evidence, promoted or rolled back.

One job per module, dependencies pointing one way (nothing here imports the request path; the
wiring into it is ``serving/rollout_service.py``, the settings are ``SERVING_ROLLOUT_*`` in
``serving/settings.py``):

- ``policy``: the ``rollout.toml`` schema, its parsing and defaults;
- ``stats``: intervals, tests and sample sizes (stdlib + NumPy);
- ``evidence``: what is recorded per version, cheaply, and merged across workers;
- ``judge``: pure functions from evidence and policy to promote / rollback / continue;
- ``routing``: sticky canary routing by client id;
- ``state``: the rollout state machine, pure transitions;
- ``store``: the SQLite file the workers share (state, evidence, one decider at a time);
- ``report``: the ``GET /v1/rollout`` body.
"""
