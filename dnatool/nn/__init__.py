"""Networks: the standalone timm network of an arch, supernets, teachers."""
