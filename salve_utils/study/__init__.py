"""The study built around the method: does each claim of the paper hold, judged against nulls?

May import :mod:`salve_utils.common` and :mod:`salve_utils.method`; never the figures
or the pipeline.

=================  ===========================================================
``stats``          bootstrap and exact intervals of accuracies
``nulls``          null edits: permuted |c|, the uniform direction, other features
``verdicts``       the rulebook: thresholds and rules for every verdict
``claims``         each claim of the paper judged on one edition's tables
``towers``         is there a Tower? shared features against a null; one latent's effects
``parts``          the known answers: planted-part recovery and suppression
``planted_head``   known-answer heads built by hand (regime A: one part per class; B: shared)
``baselines``      four head edits: SALVE, steering, a ROME-style edit, zero row
``efficacy``       the baselines at matched efficacy: what each costs the other classes
``seeds``          robustness over autoencoder seeds
``ablations``      the edit with one design choice changed, judged by the rulebook
``arms``           method or reproduction? the paper's latent, oracle directions, a sparse SAE
``atlas``          every latent against every class; composition of edits
``deep``           Eq. 1 one layer deeper (ResNet-18 layer3 -> layer4)
``report``         the editions side by side
=================  ===========================================================
"""
