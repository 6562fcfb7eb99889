"""The paper's tables on the synthetic benchmark.

* :mod:`.variants` — every conditioning variant of the paper as a config, every table row as (variant,
  test-time protocol), with the paper's numbers;
* :mod:`.suite` — trains the variants from one base config, evaluates every row, caches, resumes;
* :mod:`.margins` — the margins and drops the rows show, against the targets;
* :mod:`.report` — the Markdown report;
* :mod:`.cli` — ``mmsim experiments paper-tables``.
"""
