"""Testing detectors: evaluation on protocols, the shortcut audit, the robustness sweep."""
