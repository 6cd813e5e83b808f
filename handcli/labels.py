"""The pixel labels of handcli's label maps (cache `views/label`, renders `semantic/`; docs/cache.md).

One definition for every stage: preprocessing writes them, methods read them, renders and viewers colour them.
"""

LABELS = {"background": 0, "right": 1, "left": 2, "object": 3}
NUM_LABELS = len(LABELS)


def hand_pixels(label, sides):
    """(H, W) bool tensor: the pixels of ``label`` (H, W) tensor labelled as any of the hands ``sides``
    ("right" / "left")."""
    import torch

    return torch.isin(label, torch.tensor([LABELS[s] for s in sides], dtype=label.dtype, device=label.device))
