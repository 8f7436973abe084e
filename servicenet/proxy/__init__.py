"""servicenet.proxy"""
