r"""The method of the paper (SALVE, Flovik 2026), on its own: what a teacher reuses.

May import :mod:`salve_utils.common` only (and torch, numpy, pandas, scipy, tqdm);
never the study, the figures or the pipeline.

The three stages and the functions that carry them:

* **Discover** -- the head's input :math:`a(x)` (:func:`extract_activations`,
  :func:`load_activations`), an autoencoder :math:`L = \lVert A - \hat A\rVert^2 + \lambda \lVert Z\rVert_1`
  (:class:`SparseAutoencoder`, :func:`train_sae`, :func:`sae_metrics`), class means :math:`\mu_k` and the
  features they rank (:func:`class_mean_latents`, :func:`dominant_features`,
  :func:`shared_features`);
* **Verify** -- Grad-FAM heatmaps (:func:`grad_fam`) and activation maximisation
  (:func:`activation_maximization`);
* **Control** -- the permanent edit :math:`w'_{ij} = w_{ij}\max(0, 1 \pm \alpha|c_j|)`
  (:func:`edit_weights`, :func:`edit_model`), its effect on cached activations
  (:func:`edit_logits`, :func:`edit_curve`) and the critical strength :math:`\alpha_{crit}` (:func:`alpha_crit`).

=================  ===========================================================
``data``           Imagenette, CIFAR-100, the synthetic planted-parts set
``models``         ResNet-18 / ViT backbones, training, evaluation
``precision``      fp32 or bf16 chosen by measurement; training time estimates
``activations``    a(x), the input of the final linear layer, cached
``validation``     the argument checks every method function calls
``sae``            the sparse autoencoder  L = ||A - Â||² + λ||Z||₁
``features``       class-mean latents μ_k, dominant and shared features
``gradfam``        Grad-FAM heatmaps (Grad-CAM with an SAE latent as target)
``actmax``         activation-maximisation images of a latent
``editing``        the permanent weight edit and its accuracy curves
``alpha``          α_crit: analytic, exact (logit zero, decision flip), empirical
=================  ===========================================================
"""

from .. import METHOD
from .activations import extract_activations, load_activations
from .actmax import activation_maximization
from .alpha import alpha_crit
from .editing import edit_curve, edit_logits, edit_model, edit_weights
from .features import class_mean_latents, dominant_features, shared_features
from .gradfam import grad_fam
from .sae import SparseAutoencoder, sae_metrics, train_sae

#: the names are listed once, in :data:`salve_utils.METHOD` (the package exports them lazily)
__all__ = list(METHOD)
