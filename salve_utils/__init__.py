"""salve_utils: the helpers behind the reproducible SALVE report.

One module per stage of the method (Flovik, ICLR 2026):

=================  ===========================================================
``data``           Imagenette, CIFAR-100, the synthetic planted-parts set
``models``         ResNet-18 / ViT backbones, training, evaluation
``activations``    a(x), the input of the final linear layer, cached
``sae``            the sparse autoencoder  L = ||A - Â||² + λ||Z||₁
``features``       class-mean latents μ_k, dominant and shared features
``gradfam``        Grad-FAM heatmaps (Grad-CAM with an SAE latent as target)
``actmax``         activation-maximisation images of a latent
``editing``        the permanent weight edit and α_crit
``baselines``      activation steering, a ROME-style edit, scores
``plotting``       figures with consistent class colours
``pipeline``       the papermill runner that builds the book
=================  ===========================================================
"""

__version__ = "0.1.0"
