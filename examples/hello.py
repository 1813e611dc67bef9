import platform
import sys

name = sys.stdin.readline().strip() or "world"
print(f"Hello, {name}, from Python {platform.python_version()} inside a pistond sandbox!")
