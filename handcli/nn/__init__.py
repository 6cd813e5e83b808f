"""Neural-network building blocks shared by the methods: encodings (PE, IPE) and NeRF-style MLPs."""
