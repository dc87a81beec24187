"""Talk HTTP to a deployment and turn the answers into numbers: the single home of each concept.

    samples      Sample, ONE percentile, ONE latency summary
    attribution  which instance served an answer
    reasons      one-line reasons for failed requests
    client       the HTTP/1.1 keep-alive client the load runs on
    load         burst and steady traffic
    rounds       a burst's engine: workers sending from their answers' callbacks
    share        a long burst shared with a helper process (helper: that process)
    fetch        one-off GETs through httpx (health and JSON reads)

Import from the submodule: this package imports nothing itself, so `measure.samples` stays cheap.
"""
