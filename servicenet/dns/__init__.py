"""servicenet.dns"""
