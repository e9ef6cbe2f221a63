"""Interactive Brokers: Flex Query statements (history) and the sync that ties them to the lot engine."""
