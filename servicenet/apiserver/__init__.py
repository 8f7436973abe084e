"""servicenet.apiserver"""
