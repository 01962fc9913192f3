"""Pure tensor maths: no Trainer, optimizer or nn.Module imports live here."""
