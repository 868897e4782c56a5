"""Neural networks (no file access): SEA-RAFT optical flow, TAPIR point tracking."""
