"""servicenet.controllers"""
