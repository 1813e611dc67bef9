"""Case 4: endless stdout (Piston's runaway_output.py)."""

while True:
    print("Piston is secure")
