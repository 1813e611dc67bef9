s/.*/OK/
