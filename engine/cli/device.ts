// `--device` for every command that runs models: the choices, the default (HEED_DEVICE or cpu) and one line saying
// which device `auto` picked and why it passed over the others.
import { Option } from 'commander';
import { DEVICES, describeDevice, isDevice, resolveDevice, type ConcreteDevice, type Device } from '../onnx/device.js';
import { UsageError } from './errors.js';
import { say, type OutputMode } from './common.js';

/** The default device: HEED_DEVICE when set (checked when used), else the CPU, whose results the conformance tests pin. */
export function defaultDevice(): string {
  return process.env.HEED_DEVICE ?? 'cpu';
}

export function deviceOption(): Option {
  return new Option('--device <device>', 'execution provider (auto: the best that opens)').choices(DEVICES).default(defaultDevice());
}

/** Resolves the flag's value to a device a session opens on; says which when it is not the CPU. */
export async function resolveCliDevice(value: string, mode: OutputMode): Promise<ConcreteDevice> {
  if (!isDevice(value)) throw new UsageError(`--device must be one of ${DEVICES.join(', ')} (got '${value}')`, 'device');
  const resolved = await resolveDevice(value as Device);
  if (value !== 'cpu') say(mode, `device: ${describeDevice(resolved, value as Device)}`);
  return resolved.device;
}
