"""The paper's dataset-level validation experiments, run on an artifacts dir (``pss experiments``).

Each experiment writes ``DIR/experiments/<name>.json``. This module stays import-light (no torch): the API
uses ``NAMES`` to validate requests.
"""

# name -> (title, paper section / figure); the order is the order they run and are shown in
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "pruning": ("Pruning salient filters", "3.1, Fig. 3"),
    "perturbation": ("Random perturbation of salient filters", "A.5, Fig. 16"),
    "neighbors": ("Nearest neighbours share their mistakes", "3.2, A.2"),
    "finetuning": ("One-step fine-tuning of salient filters", "3.3, Fig. 6, B.1"),
    "masking": ("Masking salient pixels", "3.4, Fig. 7, A.8"),
    "gradcam": ("Input-space saliency vs Grad-CAM", "A.9"),
    "sanity": ("Sanity check: cascading randomization", "A.10"),
}
NAMES: tuple[str, ...] = tuple(EXPERIMENTS)
RESULTS_DIR = "experiments"
