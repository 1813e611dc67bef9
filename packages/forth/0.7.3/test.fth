.( OK) CR
