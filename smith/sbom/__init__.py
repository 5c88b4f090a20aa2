"""Software bills of materials: what an image holds, in the formats scanners read."""
