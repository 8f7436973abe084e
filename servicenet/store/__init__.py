"""servicenet.store"""
