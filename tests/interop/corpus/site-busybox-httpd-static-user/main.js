// stand-in: snaps the feed to one video at a time
