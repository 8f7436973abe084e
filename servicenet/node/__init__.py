"""servicenet.node"""
