"""servicenet.client"""
