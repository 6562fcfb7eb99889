"""Research experiments on the simulator: the paper's tables and the analyses that explain them.

Not part of the product: nothing in ``mmsim_core``, ``mmsim.app`` or the other ``mmsim`` commands imports
this package. Each experiment runs as ``mmsim experiments NAME`` (see :mod:`.cli`) or
``python -m mmsim.training.experiments.<module>``; its findings and the commands that produced them are in
this folder's ``README.md``, its committed outputs under ``results/``.

* :mod:`.paper_tables` — Tables 1, 2, 3a, 3b, 8-12 of the paper, trained and evaluated end to end;
* :mod:`.modality_information` — the synthetic oracle: how much of the video each modality decides;
* :mod:`.margin_ceiling` — the oracle: the most hand pose, EMG and force could add to a checkpoint;
* :mod:`.condition_pathway` — which path (warp, y°, hand map) carries a checkpoint's actions;
* :mod:`.samplers` — few-step samplers measured with an exact denoiser;
* :mod:`.demo_quality` — the demo checkpoint's held-out quality against the two reference rows;
* :mod:`.targets` — the margin and drop targets, and when two of them can hold at once.
"""
