"""salve_utils: the helpers behind the reproducible SALVE report.

One module per stage of the method (Flovik, ICLR 2026):

=================  ===========================================================
``data``           Imagenette, CIFAR-100, the synthetic planted-parts set
``models``         ResNet-18 / ViT backbones, training, evaluation
``precision``      fp32 or bf16 chosen by measurement; training time estimates
``activations``    a(x), the input of the final linear layer, cached
``sae``            the sparse autoencoder  L = ||A - Â||² + λ||Z||₁
``features``       class-mean latents μ_k, dominant and shared features, the Tower
``gradfam``        Grad-FAM heatmaps (Grad-CAM with an SAE latent as target)
``actmax``         activation-maximisation images of a latent
``editing``        the permanent weight edit and its accuracy curves
``alpha``          α_crit: analytic, exact (logit zero, decision flip), empirical
``baselines``      SALVE, steering, a ROME-style edit, zero row at matched efficacy
``nulls``          null edits: permuted |c|, the uniform direction, other features
``seeds``          robustness over autoencoder seeds
``ablations``      the edit with one design choice changed, judged by the rulebook
``atlas``          every latent against every class; composition of edits
``deep``           Eq. 1 one layer deeper (ResNet-18 layer3 -> layer4)
``stats``          bootstrap intervals of accuracies
``verdicts``       the rulebook: thresholds and rules for every verdict
``claims``         each claim of the paper judged on one edition's tables
``report``         the editions side by side
``plotting``       figures with consistent class colours
``pipeline``       the papermill runner that builds the book
``validation``     the argument checks every method function calls
``tables``         result tables on disk: CSV or Parquet, read alike
=================  ===========================================================
"""

__version__ = "0.1.0"
