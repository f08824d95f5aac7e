"""AdbDevice (adb-shell client) against simulated phones speaking the real ADB protocol over TCP."""
from pathlib import Path

import pytest

from profiler.adb_sim import Faults
from profiler.errors import DeviceFault, FgnasError
from profiler.measure.devices import BenchmarkSettings, create_device
from profiler.measure.devices.adb import remote_model_path
from profiler.measure.devices.device_profile import Cooldown

FAST = BenchmarkSettings(threads=1, runs=5, warmup=2, timeout_s=30)


def test_pixel1_fingerprint_and_big_cores(sims, adb_env):
    server = sims.start("pixel1")
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        info = phone.info()
        default_settings = phone.default_settings
    assert (default_settings.runs, default_settings.warmup, default_settings.threads) == (50, 10, 1)  # pixel1.json
    assert info["name"] == "pixel1" and info["model"] == "Pixel" and info["manufacturer"] == "Google"
    assert info["soc"] == "Snapdragon 821 (MSM8996 Pro)" and info["platform"] == "msm8996"
    assert info["android_release"] == "10" and info["kernel"] == "3.18.137-g72a7a64494e"
    assert info["max_freq_khz"] == {"0": 1593600, "1": 1593600, "2": 2150400, "3": 2150400}
    assert info["governors"]["3"] == "sched"
    assert info["big_core_mask"] == "c" and info["big_core_mask_source"] == "cpufreq"
    assert info["benchmark_tool"]["file"] == adb_env.name and len(info["benchmark_tool"]["sha256"]) == 64
    assert info["thermal_at_connect_c"]["tsens_tz_sensor3"] == 35.0
    assert info["serial"] == server.address and info["emulator"] is False


def test_benchmark_reports_the_tools_statistics(sims, adb_env, small_models):
    server = sims.start("pixel1")
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        phone.prepare(small_models[:2])
        m = phone.benchmark(small_models[0], FAST)
        assert phone.info()["benchmark_tool"]["output_format"] == "current"
    assert m.count == 5 and m.warmup == 2
    assert 0 < m.min_ms <= m.median_ms <= m.extra["max_ms"]
    assert m.extra["big_core_mask"] == "c" and m.extra["serial"] == server.address
    assert m.extra["temps_c"]["pm8994_tz"] == 32.5
    assert m.started_at <= m.finished_at
    assert server.phone.benchmark_runs == 2  # the --help check and this run


def test_galaxy_s8_profile_refuses_a_pixel(sims, adb_env):
    server = sims.start("pixel1")
    with pytest.raises(FgnasError, match="reports model 'Pixel'.*galaxy-s8.*--force") as err:
        create_device("galaxy-s8", serial=server.address, benchmark_binary=adb_env)
    assert err.value.exit_code == 2


def test_force_measures_a_mismatched_phone_and_records_it(sims, adb_env):
    server = sims.start("pixel1")
    with create_device("galaxy-s8", serial=server.address, benchmark_binary=adb_env, force=True) as phone:
        info = phone.info()
    assert info["forced"] is True and "Pixel" in info["profile_mismatch"]


@pytest.mark.parametrize("phone, soc, mask", [("galaxy-s8", "Exynos 8895", "f0"),
                                               ("galaxy-s8-snapdragon", "Snapdragon 835 (MSM8998)", "f0")])
def test_galaxy_s8_variants_are_told_apart(sims, adb_env, phone, soc, mask):
    server = sims.start(phone)
    with create_device("galaxy-s8", serial=server.address, benchmark_binary=adb_env) as device:
        info = device.info()
    assert info["soc"] == soc and info["big_core_mask"] == mask


def test_emulator_profile_needs_qemu_and_falls_back_to_profile_mask(sims, adb_env):
    pixel = sims.start("pixel1")
    with pytest.raises(FgnasError, match="ro.kernel.qemu"):
        create_device("emulator", serial=pixel.address, benchmark_binary=adb_env)
    emulator = sims.start("emulator")
    with create_device("emulator", serial=emulator.address, benchmark_binary=adb_env) as device:
        info = device.info()
    assert info["emulator"] is True and info["big_core_mask"] == "1"
    assert info["big_core_mask_source"] == "profile fallback"


def test_missing_benchmark_binary_says_where_to_get_it(sims, adb_env):
    server = sims.start("pixel1")
    with pytest.raises(FgnasError) as err:
        create_device("pixel1", serial=server.address)
    message = str(err.value)
    assert "android_aarch64_benchmark_model" in message and "--benchmark-binary" in message
    assert "FGNAS_BENCHMARK_MODEL" in message and "\n" not in message
    assert server.commands == 0  # refused before touching the phone


def test_binary_for_another_architecture_is_refused(sims, adb_env, tmp_path):
    x86 = tmp_path / "benchmark_model_x86_64"
    header = bytearray(adb_env.read_bytes())
    header[18:20] = (62).to_bytes(2, "little")
    x86.write_bytes(bytes(header))
    server = sims.start("pixel1")
    with pytest.raises(FgnasError, match="does not run on phone .*not executable: 64-bit ELF file"):
        create_device("pixel1", serial=server.address, benchmark_binary=x86)


def test_unreachable_serial_is_a_user_error(adb_env):
    with pytest.raises(FgnasError, match="cannot reach phone 127.0.0.1:9") as err:
        create_device("pixel1", serial="127.0.0.1:9", benchmark_binary=adb_env)
    assert err.value.exit_code == 2


def test_usb_serial_without_a_usable_usb_stack_is_a_user_error(adb_env):
    with pytest.raises(FgnasError, match="USB") as err:
        create_device("pixel1", serial="FA6AB0300001", benchmark_binary=adb_env)
    assert err.value.exit_code == 2


def test_missing_serial_is_a_user_error(adb_env):
    with pytest.raises(FgnasError, match="needs --serial"):
        create_device("pixel1", benchmark_binary=adb_env)


def test_key_refused_on_the_phone_says_to_accept_the_prompt(sims, adb_env, adb_key_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FGNAS_ADB_KEY", str(tmp_path / "fresh" / "adbkey"))
    server = sims.start("pixel1", Faults(reject_keys=True))
    with pytest.raises(FgnasError, match="did not accept our ADB key"):
        create_device("pixel1", serial=server.address, benchmark_binary=adb_env)


def test_key_is_created_in_home_when_missing(sims, adb_env, adb_key_dir):
    server = sims.start("pixel1")
    create_device("pixel1", serial=server.address, benchmark_binary=adb_env).close()
    assert (adb_key_dir / ".android" / "adbkey").is_file()
    assert (adb_key_dir / ".android" / "adbkey.pub").is_file()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_dropped_connections_are_reconnected_and_every_model_measured(sims, adb_env, small_models, k):
    server = sims.start("pixel1", Faults(drop_every=k))
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        phone.prepare(small_models)
        results = [phone.benchmark(model, FAST) for model in small_models]
        assert phone.info()["reconnects"] > 0
    assert [m.count for m in results] == [5, 5, 5]


def test_adbd_restart_mid_sweep_is_reconnected_on_the_same_port(sims, adb_env, small_models, monkeypatch):
    import threading

    from profiler.adb_sim import AdbServer

    monkeypatch.setenv("FGNAS_ADB_RETRIES", "6")  # backoff 0.05 .. 1.6 s: ~3 s in all, far beyond the 0.3 s outage
    server = sims.start("pixel1")
    port = int(server.address.rsplit(":", 1)[1])
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        phone.prepare(small_models[:1])
        server.stop()  # adbd goes away; it comes back 0.3 s later on the same port, knowing our key

        def restart():
            restarted = AdbServer(server.phone, port=port).start()
            for key in server.trusted_keys():
                restarted.trust(key)
            sims.servers.append(restarted)

        timer = threading.Timer(0.3, restart)
        timer.start()
        m = phone.benchmark(small_models[0], FAST)
        timer.join()
        assert phone.info()["reconnects"] >= 1
    assert m.count == 5


def test_phone_gone_for_good_is_a_device_fault(sims, adb_env, small_models):
    server = sims.start("pixel1")
    phone = create_device("pixel1", serial=server.address, benchmark_binary=adb_env)
    server.stop()
    with pytest.raises(DeviceFault, match=f"phone {server.address} stopped answering") as err:
        phone.benchmark(small_models[0], FAST)
    assert err.value.exit_code == 3


def test_hot_phone_is_waited_for_before_a_batch(sims, adb_env, small_models):
    server = sims.start("pixel1", hot_reads=3)
    cooldown = Cooldown(start_below_c=40.0, poll_s=0.05, max_wait_s=10.0, zone_types=())
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env, cooldown=cooldown) as phone:
        phone.prepare(small_models[:1])  # the connect-time read was the first hot one; two more to wait out
        m = phone.benchmark(small_models[0], FAST)
    assert m.extra["cooldown"]["waited_s"] >= 0.1
    assert m.extra["cooldown"]["still_hot"] is False and m.extra["cooldown"]["hottest_c"] == 35.0


def test_hot_phone_that_never_cools_is_measured_and_flagged(sims, adb_env, small_models):
    server = sims.start("pixel1", hot_reads=100)
    cooldown = Cooldown(start_below_c=40.0, poll_s=0.05, max_wait_s=0.2, zone_types=())
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env, cooldown=cooldown) as phone:
        phone.prepare(small_models[:1])
        m = phone.benchmark(small_models[0], FAST)
    assert m.extra["cooldown"]["still_hot"] is True and m.extra["hottest_c"] == 55.0


@pytest.mark.parametrize("variant, xnnpack_flag", [("2018", False), ("2019", False), ("2020", True)])
def test_older_tools_get_only_the_flags_they_know_and_their_output_is_read(sims, adb_env, small_models, variant,
                                                                            xnnpack_flag):
    server = sims.start("pixel1", output_variant=variant)
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        m = phone.benchmark(small_models[1], FAST)
        assert phone.info()["benchmark_tool"]["has_use_xnnpack_flag"] is xnnpack_flag
        assert ("--min_secs=0" in phone.command("m.tflite", FAST)) is (variant != "2018")
    assert m.extra["output_format"] == variant and m.count == 5


def test_pushed_model_is_byte_identical_on_the_phone(sims, adb_env, small_models):
    server = sims.start("pixel1")
    with create_device("pixel1", serial=server.address, benchmark_binary=adb_env) as phone:
        phone.prepare(small_models[:1])
        phone.benchmark(small_models[0], FAST)
        phone.benchmark(small_models[0], FAST)
    pushed = server.phone.read_file(remote_model_path(Path(small_models[0]).read_bytes()))
    assert pushed == Path(small_models[0]).read_bytes()
