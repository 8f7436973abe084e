"""servicenet.api"""
