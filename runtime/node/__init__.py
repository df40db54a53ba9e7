"""``olvf-serve``: a DICOM node that receives radiographs, screens them and sends the results back, losing nothing.

    modality --C-STORE--> [SCP] -> spool/inbox -> [worker: study pipeline] -> spool/outbox -> [sender] --C-STORE--> PACS

- :mod:`.config`: settings from flags and a TOML file; the screening rule, the retry policy.
- :mod:`.spool`: the folders every instance moves through, durable writes, the ledger (one record per instance).
- :mod:`.space`: the spool's space as a budget: room kept for the results of everything waiting.
- :mod:`.scp`: the C-STORE / C-ECHO SCP: allow-list, SOP classes, success only once on disk.
- :mod:`.worker`: screens what waits, studies that arrived together in one batch.
- :mod:`.sender`: results to the PACS, each once, with retries, backoff and a dead-letter folder.
- :mod:`.server`: all of them started and stopped together (SIGTERM finishes the study in hand).
- :mod:`.status`, :mod:`.studylog`: the operator's view and the log (hashes, never names or patient IDs).
- :mod:`.cli`: ``olvf-serve`` and ``olvf-serve status``.
"""
