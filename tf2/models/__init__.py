"""Models: ResNet and its layers, the SimCLR model, variable roles."""
